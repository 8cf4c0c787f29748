import Testing
@testable import VigilIKEv2
