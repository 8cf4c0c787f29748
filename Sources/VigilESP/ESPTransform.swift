import VigilAlgorithms
import VigilCrypto

/// Why an inbound ESP packet was refused by the transform. Stable names: they label drop counters.
public enum ESPDecodeError: Error, Hashable, Sendable {
    /// Shorter than header + IV + trailer + ICV, or CBC ciphertext not in whole blocks (RFC 4303 §2, RFC 3602 §3).
    case malformed
    /// ICV or GCM tag did not verify (RFC 4303 §3.4.4).
    case authenticationFailed
    /// Pad Length larger than the payload, or Padding bytes not the default 1, 2, 3, ... (RFC 4303 §2.4).
    case badPadding
}

/// The per-SA cryptographic transform: AES-GCM-16 (RFC 4106) or AES-CBC (RFC 3602) with a truncated HMAC
/// (RFC 2404, RFC 4868). Works in place on a caller's buffer and allocates nothing per packet.
/// Not thread-safe: the owning `SecurityAssociation` serializes use.
final class ESPTransform: @unchecked Sendable {
    private enum Cipher {
        case gcm(GCMContext)
        case cbc(CBCContext, IntegrityContext)
    }

    private let cipher: Cipher
    let ivLength: Int
    let icvLength: Int
    /// Payload + padding + trailer is a multiple of this (RFC 4303 §2.4).
    let alignment: Int
    /// Scratch for computing an ICV before comparing it; also the 16-byte counter block for CBC IVs.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)

    init(encryption: EncryptionAlgorithm, encryptionKey: [UInt8], integrity: IntegrityAlgorithm?, integrityKey: [UInt8])
        throws(CryptoError)
    {
        scratch.initializeMemory(as: UInt8.self, repeating: 0)
        switch encryption {
        case .aes128gcm16, .aes256gcm16:
            cipher = .gcm(try GCMContext(encryption, keyMaterial: SecureBytes(encryptionKey)))
            ivLength = ESPSpec.gcmIVLength
            icvLength = ESPSpec.gcmICVLength
            alignment = ESPSpec.gcmAlignment
        case .aes128cbc, .aes256cbc:
            guard let integrity else {
                preconditionFailure("AES-CBC SA without integrity: the caller validates proposals")
            }
            let mac = try IntegrityContext(integrity, key: SecureBytes(integrityKey))
            cipher = .cbc(try CBCContext(encryption, key: SecureBytes(encryptionKey)), mac)
            ivLength = ESPSpec.cbcIVLength
            icvLength = integrity.icvLength
            alignment = ESPSpec.cbcBlockSize
        }
    }

    deinit {
        scratch.initializeMemory(as: UInt8.self, repeating: 0)
        scratch.deallocate()
    }

    /// Bytes this transform puts before the inner packet (ESP header + IV).
    var overheadBefore: Int { ESPSpec.headerLength + ivLength }

    /// Bytes of padding for an inner packet of `length` bytes.
    func padLength(payload length: Int) -> Int {
        let unaligned = (length + ESPSpec.trailerLength) % alignment
        return unaligned == 0 ? 0 : alignment - unaligned
    }

    /// Builds an ESP packet around the inner packet at `payload` in `buffer` (RFC 4303 §3.3): header and IV are
    /// written in the `overheadBefore` bytes before it, padding, trailer and ICV after it. Returns the packet's range.
    func seal(
        buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>, spi: UInt32, sequenceNumber: UInt32, nextHeader: UInt8
    ) throws(CryptoError) -> Range<Int> {
        let start = payload.lowerBound - overheadBefore
        precondition(start >= 0, "no headroom for the ESP header")
        let padLength = padLength(payload: payload.count)
        let encryptedEnd = payload.upperBound + padLength + ESPSpec.trailerLength
        let end = encryptedEnd + icvLength
        precondition(end <= buffer.count, "no tailroom for the ESP trailer")

        buffer.storeBigEndian(spi, at: start)
        buffer.storeBigEndian(sequenceNumber, at: start + 4)
        for index in 0..<padLength { buffer[payload.upperBound + index] = UInt8(index + 1) }
        buffer[encryptedEnd - 2] = UInt8(padLength)
        buffer[encryptedEnd - 1] = nextHeader

        let header = UnsafeRawBufferPointer(rebasing: buffer[start..<start + ESPSpec.headerLength])
        let ivRange = start + ESPSpec.headerLength..<payload.lowerBound
        let encrypted = UnsafeMutableRawBufferPointer(rebasing: buffer[payload.lowerBound..<encryptedEnd])
        switch cipher {
        case .gcm(let gcm):
            // The IV only has to be unique per key (RFC 4106 §3.1): the sequence number is.
            buffer.storeBigEndian(UInt64(sequenceNumber), at: ivRange.lowerBound)
            try gcm.seal(
                iv: UnsafeRawBufferPointer(rebasing: buffer[ivRange]), aad: header, inPlace: encrypted,
                tag: UnsafeMutableRawBufferPointer(rebasing: buffer[encryptedEnd..<end]))
        case .cbc(let cbc, let mac):
            // The IV must be unpredictable (RFC 3602 §3): encrypt a unique block under the SA's key
            // (NIST SP 800-38A appendix C), here the sequence number.
            let iv = UnsafeMutableRawBufferPointer(rebasing: buffer[ivRange])
            iv.initializeMemory(as: UInt8.self, repeating: 0)
            iv.storeBigEndian(UInt64(sequenceNumber), at: 8)
            scratch.initializeMemory(as: UInt8.self, repeating: 0)
            try cbc.encrypt(inPlace: iv, iv: UnsafeRawBufferPointer(rebasing: scratch[0..<ESPSpec.cbcIVLength]))
            try cbc.encrypt(inPlace: encrypted, iv: UnsafeRawBufferPointer(iv))
            mac.mac(
                UnsafeRawBufferPointer(rebasing: buffer[start..<encryptedEnd]),
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[encryptedEnd..<end]))
        }
        return start..<end
    }

    /// Authenticates and decrypts the ESP packet at `packet` in place (RFC 4303 §3.4.4, §3.4.5). Returns where the
    /// inner packet now lies and its Next Header. The caller has already read SPI and sequence number.
    func open(buffer: UnsafeMutableRawBufferPointer, packet: Range<Int>) throws(ESPDecodeError)
        -> (payload: Range<Int>, nextHeader: UInt8)
    {
        let ivStart = packet.lowerBound + ESPSpec.headerLength
        let encryptedStart = ivStart + ivLength
        let encryptedEnd = packet.upperBound - icvLength
        guard encryptedEnd - encryptedStart >= ESPSpec.trailerLength,
            (encryptedEnd - encryptedStart) % alignment == 0
        else { throw .malformed }

        let encrypted = UnsafeMutableRawBufferPointer(rebasing: buffer[encryptedStart..<encryptedEnd])
        let iv = UnsafeRawBufferPointer(rebasing: buffer[ivStart..<encryptedStart])
        let icv = UnsafeRawBufferPointer(rebasing: buffer[encryptedEnd..<packet.upperBound])
        switch cipher {
        case .gcm(let gcm):
            let header = UnsafeRawBufferPointer(rebasing: buffer[packet.lowerBound..<ivStart])
            do {
                try gcm.open(iv: iv, aad: header, inPlace: encrypted, tag: icv)
            } catch {
                throw .authenticationFailed
            }
        case .cbc(let cbc, let mac):
            let computed = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<icvLength])
            mac.mac(UnsafeRawBufferPointer(rebasing: buffer[packet.lowerBound..<encryptedEnd]), into: computed)
            guard constantTimeEquals(UnsafeRawBufferPointer(computed), icv) else { throw .authenticationFailed }
            do {
                try cbc.decrypt(inPlace: encrypted, iv: iv)
            } catch {
                throw .malformed
            }
        }
        let padLength = Int(buffer[encryptedEnd - 2])
        let nextHeader = buffer[encryptedEnd - 1]
        let payloadEnd = encryptedEnd - ESPSpec.trailerLength - padLength
        guard payloadEnd >= encryptedStart else { throw .badPadding }
        for index in 0..<padLength where buffer[payloadEnd + index] != UInt8(index + 1) { throw .badPadding }
        return (encryptedStart..<payloadEnd, nextHeader)
    }
}
