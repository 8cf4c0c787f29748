import Testing
@testable import VigilESP
