import VigilAlgorithms
import VigilCrypto
import VigilIKE
import VigilWire

/// The keys of one IKE SA (RFC 7296 §2.14): {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}.
struct IKESAKeys: Sendable {
    let algorithms: IKEAlgorithms
    let skD: SecureBytes
    let skAi: SecureBytes
    let skAr: SecureBytes
    let skEi: SecureBytes
    let skEr: SecureBytes
    let skPi: SecureBytes
    let skPr: SecureBytes

    /// §2.14: SKEYSEED = prf(Ni | Nr, g^ir); keys = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
    static func initial(
        _ algorithms: IKEAlgorithms, sharedSecret: SecureBytes, ni: [UInt8], nr: [UInt8], spiI: UInt64, spiR: UInt64
    ) -> IKESAKeys {
        // The DH secret becomes PRF input data; the copy lives only for this call.
        let skeyseed = PRF.compute(algorithms.prf, key: SecureBytes(ni + nr), data: sharedSecret.bytes)
        return expand(algorithms, skeyseed: skeyseed, ni: ni, nr: nr, spiI: spiI, spiR: spiR)
    }

    /// §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), with the new SA's algorithms and SPIs.
    static func rekeyed(
        _ algorithms: IKEAlgorithms, oldPRF: PseudorandomFunction, oldSKd: SecureBytes, sharedSecret: SecureBytes,
        ni: [UInt8], nr: [UInt8], spiI: UInt64, spiR: UInt64
    ) -> IKESAKeys {
        let skeyseed = PRF.compute(oldPRF, key: oldSKd, data: sharedSecret.bytes + ni + nr)
        return expand(algorithms, skeyseed: skeyseed, ni: ni, nr: nr, spiI: spiI, spiR: spiR)
    }

    private static func expand(
        _ algorithms: IKEAlgorithms, skeyseed: SecureBytes, ni: [UInt8], nr: [UInt8], spiI: UInt64, spiR: UInt64
    ) -> IKESAKeys {
        let prfLength = algorithms.prf.outputLength
        let integrityLength = algorithms.integrity?.keyLength ?? 0
        let encryptionLength = algorithms.encryption.keyMaterialLength
        let total = prfLength * 3 + integrityLength * 2 + encryptionLength * 2
        let stream = PRF.plus(algorithms.prf, key: skeyseed, seed: ni + nr + bigEndian(spiI) + bigEndian(spiR), length: total)
        var offset = 0
        func take(_ count: Int) -> SecureBytes {
            defer { offset += count }
            return stream[offset..<offset + count]
        }
        return IKESAKeys(
            algorithms: algorithms, skD: take(prfLength), skAi: take(integrityLength), skAr: take(integrityLength),
            skEi: take(encryptionLength), skEr: take(encryptionLength), skPi: take(prfLength), skPr: take(prfLength)
        )
    }

    /// §2.17: KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr); initiator-to-responder keys first, encryption before
    /// integrity in each direction.
    func childKeys(
        _ child: ChildAlgorithms, sharedSecret: SecureBytes?, ni: [UInt8], nr: [UInt8], weAreInitiator: Bool
    ) -> ChildSAKeys {
        let encryptionLength = child.encryption.keyMaterialLength
        let integrityLength = child.integrity?.keyLength ?? 0
        let seed = (sharedSecret?.bytes ?? []) + ni + nr
        let stream = PRF.plus(algorithms.prf, key: skD, seed: seed, length: 2 * (encryptionLength + integrityLength))
        let eInitiator = stream[0..<encryptionLength]
        let aInitiator = stream[encryptionLength..<encryptionLength + integrityLength]
        let responderStart = encryptionLength + integrityLength
        let eResponder = stream[responderStart..<responderStart + encryptionLength]
        let aResponder = stream[responderStart + encryptionLength..<responderStart + encryptionLength + integrityLength]
        let hasIntegrity = child.integrity != nil
        return weAreInitiator
            ? ChildSAKeys(encryptionIn: eResponder, encryptionOut: eInitiator,
                          integrityIn: hasIntegrity ? aResponder : nil, integrityOut: hasIntegrity ? aInitiator : nil)
            : ChildSAKeys(encryptionIn: eInitiator, encryptionOut: eResponder,
                          integrityIn: hasIntegrity ? aInitiator : nil, integrityOut: hasIntegrity ? aResponder : nil)
    }

    /// §2.15 AUTH for a shared key: prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>), where
    /// SignedOctets = RealMessage | Nonce of the other side | prf(SK_px, RestOfIDPayload).
    func sharedKeyAuthentication(
        preSharedKey: SecureBytes, realMessage: [UInt8], otherNonce: [UInt8], identification: IKEv2.Identification,
        ofInitiator: Bool
    ) -> [UInt8] {
        let prf = algorithms.prf
        let macedID = PRF.compute(prf, key: ofInitiator ? skPi : skPr, data: identification.body)
        let signedOctets = realMessage + otherNonce + macedID.bytes
        let padKey = PRF.compute(prf, key: preSharedKey, data: Array(IKEv2Constants.keyPad.utf8))
        return PRF.compute(prf, key: padKey, data: signedOctets).bytes
    }
}

enum IKEv2Constants {
    /// §2.15: the fixed string mixed into shared-key AUTH.
    static let keyPad = "Key Pad for IKEv2"
}

func bigEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64(56 - 8 * $0)) } }
func bigEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> UInt32(24 - 8 * $0)) } }
func uint32(_ bytes: [UInt8]) -> UInt32? {
    guard bytes.count == 4 else { return nil }
    return bytes.reduce(0) { $0 << 8 | UInt32($1) }
}
