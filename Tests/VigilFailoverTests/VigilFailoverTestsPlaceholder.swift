import Testing
@testable import VigilFailover
