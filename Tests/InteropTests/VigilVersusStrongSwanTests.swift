import Foundation
import Testing
import VigilLab

/// The brief's comparison: in the same lab, with the same DPD settings, Vigil fails over faster than strongSwan.
/// strongSwan 5.9.8 configured for failover (`remote_addrs` listing the three gateways, `dpd_action = restart`) keeps
/// retrying the dead first gateway (its issue #776), so within the bound it never recovers at all.
@Suite(.serialized) struct VigilVersusStrongSwanTests {
    @Test(arguments: [2, 1])
    func vigilRecoversFasterThanStrongSwanInTheSameLab(ikeVersion: Int) throws {
        let bound = Duration.seconds(8)
        let vigil = try VigildLab.measureFailover(ikeVersion: ikeVersion, bound: bound)
        var configuration = StrongSwanBaseline.Configuration(ikeVersion: ikeVersion)
        configuration.recoveryBound = bound
        let strongSwan = try StrongSwanBaseline.run(configuration).measurement

        let vigilBlackout = try #require(vigil.blackout, "no ping report for vigild")
        #expect(vigilBlackout.recovered, "vigild did not recover:\n\(vigil.timeline.rendered(expected: FailoverTimeline.Event.allCases))")
        #expect(vigil.recoveredVia == FailoverLab.gatewayAddress(1))
        // strongSwan's blackout, or the whole bound when it never came back.
        let theirs = strongSwan.blackout.map { $0.recovered ? $0.duration : bound } ?? bound
        #expect(vigilBlackout.duration < theirs, "vigild \(vigilBlackout.duration) vs strongSwan \(theirs)")
        print("[compare] IKEv\(ikeVersion): vigild blackout \(PingOutput.milliseconds(vigilBlackout.duration)) via \(vigil.recoveredVia ?? "none"); "
            + "strongSwan \(strongSwan.blackout?.recovered == true ? PingOutput.milliseconds(theirs) : "not recovered within \(bound)") "
            + "via \(strongSwan.recoveredVia ?? "none")")
    }
}
