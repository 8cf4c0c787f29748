import Testing
import VigilIKE

/// The engines' counter names are exported as metric names: they must stay what they were.
@Suite struct IKECounterTests {
    @Test func exportedNamesAreTheOnesDashboardsRead() {
        let exported = Set(IKECounter.allCases.map(\.rawValue))
        #expect(exported.count == IKECounter.allCases.count)
        for name in ["authenticationFailures", "retransmissions", "malformedDatagrams", "cookiesSent", "unauthenticatedNotifies",
                     "livenessRetransmissions", "malformedDropped", "dpdProbesAnswered", "quickMode3Missing",
                     "unauthenticatedRequestsRefused", "halfOpenPerSourceDropped"] {
            #expect(exported.contains(name), "\(name)")
        }
        #expect([IKECounter.cookiesSent: 2, .retransmissions: 1].byExportedName == ["cookiesSent": 2, "retransmissions": 1])
    }
}
