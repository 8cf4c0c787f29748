import Testing
@testable import VigilWire

@Suite struct WireReaderTests {
    @Test func readsNetworkOrderAndRefusesToOverrun() throws {
        var reader = WireReader([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07])
        #expect(try reader.readUInt8("a") == 0x01)
        #expect(try reader.readUInt16("b") == 0x0203)
        #expect(try reader.readUInt32("c") == 0x0405_0607)
        #expect(reader.isAtEnd)
        #expect(throws: WireError.self) { try reader.readUInt8("past end") }
    }

    @Test func subReaderIsBoundedToItsPayload() throws {
        var reader = WireReader([0, 3, 0xAA, 0xBB, 0xCC, 0xDD])
        let length = try reader.readUInt16("length")
        var body = try reader.subReader(Int(length), "body")
        #expect(try body.readBytes(3, "body") == [0xAA, 0xBB, 0xCC])
        do {
            _ = try body.readUInt8("beyond")
            Issue.record("read past a sub-reader's end")
        } catch {
            #expect(error.code == .truncated)
            #expect(error.detail.contains("beyond"))
        }
        #expect(try reader.readUInt8("next") == 0xDD)
    }

    @Test func writerPatchesLengths() {
        var writer = WireWriter()
        writer.write(UInt8(7))
        let at = writer.count
        writer.write(UInt16(0))
        writer.write(bytes: [1, 2, 3])
        writer.patch(UInt16(writer.count), at: at)
        writer.write(UInt32(0xDEAD_BEEF))
        #expect(writer.bytes == [7, 0, 6, 1, 2, 3, 0xDE, 0xAD, 0xBE, 0xEF])
    }
}
