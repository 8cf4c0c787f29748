import Testing
@testable import VigilDaemon
