import Testing
import VigilAlgorithms
@testable import VigilCrypto

@Suite struct KeyExchangeTests {
    struct ECPVector: Sendable, CustomTestStringConvertible {
        let group: DHGroup
        let i: [UInt8], gix: [UInt8], giy: [UInt8]
        let r: [UInt8], grx: [UInt8], gry: [UInt8]
        let girx: [UInt8]
        var testDescription: String { group.description }
    }

    // RFC 5903 §8.1 (256-bit random ECP group) and §8.2 (384-bit).
    static let ecpVectors: [ECPVector] = [
        ECPVector(group: .ecp256,
                  i: hex("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433"),
                  gix: hex("DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180"),
                  giy: hex("5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3"),
                  r: hex("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53"),
                  grx: hex("D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63"),
                  gry: hex("56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB"),
                  girx: hex("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE")),
        ECPVector(group: .ecp384,
                  i: hex("099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655 E35B5380 41E649EE 3FAEF896 783AB194"),
                  gix: hex("667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA"),
                  giy: hex("9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C"),
                  r: hex("41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942 E0308312 916B8ED2 960E4BD5 5A7448FC"),
                  grx: hex("E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571"),
                  gry: hex("DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C"),
                  girx: hex("11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4 D6031355 69B9E9D0 9CF5D4A2 70F59746")),
    ]

    @Test(arguments: ecpVectors)
    func rfc5903KnownAnswer(_ vector: ECPVector) throws {
        let initiator = try KeyExchange(group: vector.group, privateKey: vector.i, publicValue: vector.gix + vector.giy)
        let responder = try KeyExchange(group: vector.group, privateKey: vector.r, publicValue: vector.grx + vector.gry)
        // RFC 5903 §7: the KE payload carries x || y, the shared secret is x of g^ir.
        #expect(initiator.publicValue == vector.gix + vector.giy)
        #expect(responder.publicValue == vector.grx + vector.gry)
        #expect(try initiator.sharedSecret(peerPublicValue: responder.publicValue).bytes == vector.girx)
        #expect(try responder.sharedSecret(peerPublicValue: initiator.publicValue).bytes == vector.girx)
    }

    @Test func rfc5903PublicValueMustMatchPrivateKey() {
        let vector = Self.ecpVectors[0]
        #expect(throws: CryptoError.self) {
            try KeyExchange(group: .ecp256, privateKey: vector.i, publicValue: vector.grx + vector.gry)
        }
    }

    @Test func rfc7748X25519KnownAnswer() throws {
        // RFC 7748 §6.1.
        let alice = try KeyExchange(group: .curve25519,
                                    privateKey: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
                                    publicValue: nil)
        let bob = try KeyExchange(group: .curve25519,
                                  privateKey: hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
                                  publicValue: nil)
        #expect(alice.publicValue == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        #expect(bob.publicValue == hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        #expect(try alice.sharedSecret(peerPublicValue: bob.publicValue).bytes == shared)
        #expect(try bob.sharedSecret(peerPublicValue: alice.publicValue).bytes == shared)
    }

    @Test(arguments: DHGroup.allCases)
    func twoPartiesAgree(_ group: DHGroup) throws {
        let a = try KeyExchange(group: group)
        let b = try KeyExchange(group: group)
        #expect(a.group == group)
        #expect(a.publicValue.count == group.publicValueLength)
        #expect(a.publicValue != b.publicValue)
        let ab = try a.sharedSecret(peerPublicValue: b.publicValue)
        let ba = try b.sharedSecret(peerPublicValue: a.publicValue)
        #expect(ab == ba)
        #expect(ab.count == group.sharedSecretLength)
    }

    @Test func modpSecretWithLeadingZeroKeepsFullLength() throws {
        // RFC 7296 §2.14: g^ir is as long as the prime, leading zeros included. Without EVP_PKEY_CTX_set_dh_pad about
        // 1 in 256 secrets comes out short. Exchange until a secret starting with 0x00 turns up (about 256 tries;
        // 4000 without one has odds near e^-15) and require every secret on the way to be full length.
        let group = DHGroup.modp2048
        let peer = try KeyExchange(group: group)
        var sawLeadingZero = false
        for _ in 0..<4000 where !sawLeadingZero {
            let secret = try KeyExchange(group: group).sharedSecret(peerPublicValue: peer.publicValue)
            try #require(secret.count == group.publicValueLength)
            sawLeadingZero = secret.withUnsafeBytes { $0[0] == 0 }
        }
        #expect(sawLeadingZero)
    }

    @Test(arguments: DHGroup.allCases)
    func rejectsWrongLength(_ group: DHGroup) throws {
        let ours = try KeyExchange(group: group)
        for length in [0, group.publicValueLength - 1, group.publicValueLength + 1] {
            expectRejected(ours, repeated(0x5a, length), "\(group) accepted a \(length)-byte public value")
        }
    }

    @Test(arguments: [DHGroup.modp2048, .modp3072])
    func modpRejectsDegenerateValues(_ group: DHGroup) throws {
        // RFC 6989 §2.1: 0, 1, p-1 and anything >= p are not acceptable public values.
        let ours = try KeyExchange(group: group)
        let length = group.publicValueLength
        var values = [repeated(0, length), repeated(0, length - 1) + [1], repeated(0xff, length)]
        if group == .modp2048 {
            values.append(Self.modp2048Prime)
            values.append(Self.modp2048Prime.dropLast() + [Self.modp2048Prime.last! - 1])
        }
        for value in values {
            expectRejected(ours, value, "\(group) accepted a degenerate public value")
        }
    }

    @Test(arguments: [DHGroup.ecp256, .ecp384])
    func ecpRejectsPointsOffTheCurve(_ group: DHGroup) throws {
        let ours = try KeyExchange(group: group)
        var value = try KeyExchange(group: group).publicValue
        value[value.count - 1] ^= 0x01  // y changed: no longer on the curve
        expectRejected(ours, value, "\(group) accepted a point off the curve")
        expectRejected(ours, repeated(0, group.publicValueLength), "\(group) accepted (0, 0)")
    }

    @Test func x25519RejectsAllZeroResult() throws {
        // RFC 7748 §6.1: a low-order peer value gives the all-zero secret, which must be refused (RFC 8031 §2.1 says
        // check). u = 0 and u = 1 are both of low order.
        let ours = try KeyExchange(group: .curve25519)
        for value in [repeated(0, 32), [1] + repeated(0, 31)] {
            expectRejected(ours, value, "X25519 accepted a low-order point")
        }
    }

    /// RFC 3526 §3: the 2048-bit MODP prime (group 14).
    static let modp2048Prime = hex("""
        FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD
        EF9519B3 CD3A431B 302B0A6D F25F1437 4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED
        EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F
        83655D23 DCA3AD96 1C62F356 208552BB 9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B
        E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510
        15728E5A 8AACAA68 FFFFFFFF FFFFFFFF
        """)

    @Test(arguments: DHGroup.allCases)
    func arbitraryPeerValuesNeverCrash(_ group: DHGroup) throws {
        // Whatever a peer sends, the answer is a full-length secret or `.invalidPeerPublicValue`: never a crash,
        // never another code. Seeded so a failure replays.
        var generator = SplitMix64(seed: UInt64(group.rawValue))
        let ours = try KeyExchange(group: group)
        var accepted = 0
        for _ in 0..<16 {
            let value = (0..<group.publicValueLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
            do {
                let secret = try ours.sharedSecret(peerPublicValue: value)
                #expect(secret.count == group.sharedSecretLength)
                accepted += 1
            } catch {
                #expect(error.code == .invalidPeerPublicValue)
            }
        }
        switch group {
        case .ecp256, .ecp384: #expect(accepted == 0)  // a random x || y is on the curve with negligible odds
        case .curve25519: #expect(accepted == 16)      // every 32-byte string is a u-coordinate (RFC 7748 §5)
        case .modp2048, .modp3072: #expect(accepted > 0 && accepted < 16)  // about half lie in the order-q subgroup
        }
    }

    /// The peer value must be refused with `.invalidPeerPublicValue`.
    func expectRejected(_ ours: KeyExchange, _ value: [UInt8], _ comment: Comment,
                        sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try ours.sharedSecret(peerPublicValue: value)
            Issue.record(comment, sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == .invalidPeerPublicValue, sourceLocation: sourceLocation)
        }
    }
}
