import Testing
import VigilAddressing
@testable import VigilDaemon

/// The kernel data plane's port-4500 socket and what vigild does with ESP that still reaches it.
@Suite struct UndeliveredESPTests {
    @Test func natTraversalSocketHandsESPToTheKernel() throws {
        // Port 0: any free port on loopback; the option is per socket, the port does not matter to the kernel.
        let socket = try UDPSocket(bindTo: Endpoint(.v4(0x7F00_0001), 0))
        #expect(try socket.encapsulationType() == 0)
        try socket.enableKernelESPDecapsulation()
        #expect(try socket.encapsulationType() == UDPSocket.espInUDPEncapsulation)
    }

    @Test func spiIsTheFirstFourOctets() {
        #expect(UndeliveredESP.spi(of: [0x07, 0x66, 0xE6, 0x21, 0, 0, 0, 1]) == 0x0766_E621)
        #expect(UndeliveredESP.spi(of: [0x07, 0x66, 0xE6]) == nil)
    }

    @Test func reportedOncePerChildSAAndLoggedAtMostOncePerInterval() {
        var undelivered = UndeliveredESP()
        let live: Set<UInt32> = [0x0000_1000, 0x0000_2000]
        let first = undelivered.observe(spi: 0x1000, childSA: "LAB/10 with 192.0.2.11", liveSPIs: live, now: .seconds(1))
        #expect(first.logDatagrams == 1)
        #expect(first.reportChildSA?.contains("SPI 00001000") == true)
        #expect(undelivered.errors[0x1000] == first.reportChildSA)

        var logged: UInt64 = 0
        for step in 1...99 {
            let next = undelivered.observe(spi: 0x1000, childSA: "LAB/10 with 192.0.2.11", liveSPIs: live, now: .milliseconds(1000 + step))
            #expect(next.reportChildSA == nil)
            logged += next.logDatagrams ?? 0
        }
        #expect(logged == 0)
        let later = undelivered.observe(spi: 0x1000, childSA: "LAB/10 with 192.0.2.11", liveSPIs: live, now: .seconds(1) + UndeliveredESP.logInterval)
        #expect(later.logDatagrams == 100)

        // Another Child SA is reported on its own; an SPI that names none of ours is only counted.
        #expect(undelivered.observe(spi: 0x2000, childSA: "LAB/10 with 192.0.2.12", liveSPIs: live, now: .seconds(30)).reportChildSA != nil)
        #expect(undelivered.observe(spi: 0x3000, childSA: nil, liveSPIs: live, now: .seconds(31)).reportChildSA == nil)
    }

    @Test func forgetsChildSAsThatAreGone() {
        var undelivered = UndeliveredESP()
        for spi in UInt32(1)...100 {
            _ = undelivered.observe(spi: spi, childSA: "LAB/10", liveSPIs: [spi], now: .seconds(Int64(spi)))
        }
        #expect(undelivered.errors.count == 1)
    }

    @Test func spisKeepTheirLeadingZeros() {
        #expect(hex(UInt32(0x0766_E621)) == "0766e621")
        #expect(hex(UInt64(0x0766_E621_C010_DC15)) == "0766e621c010dc15")
        #expect(SessionKey(version: .v2, spi: 0x0766_E621_C010_DC15).description.hasSuffix("/0766e621c010dc15"))
    }
}
