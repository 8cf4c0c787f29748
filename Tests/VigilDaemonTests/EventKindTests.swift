import Testing
import VigilFailover
@testable import VigilDaemon

/// Event names are typed (`EventKind`); on the wire they stay the strings scripts already match on.
@Suite struct EventKindTests {
    @Test func coordinatorNoticesKeepTheirNames() {
        for notice in FailoverCoordinator<String>.Notice.Kind.allCases {
            #expect(EventKind(notice).rawValue == notice.rawValue)
        }
    }

    @Test func theDaemonsOwnKindsAreKebabCase() {
        let notices = Set(FailoverCoordinator<String>.Notice.Kind.allCases.map(\.rawValue))
        for kind in EventKind.allCases where !notices.contains(kind.rawValue) {
            #expect(kind.rawValue.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }, "\(kind.rawValue)")
        }
        #expect(EventKind.declaredDead.rawValue == "declared-dead")
        #expect(EventKind.dataplaneProgrammed.rawValue == "dataplane-programmed")
    }
}
