import Testing
@testable import VigilIKEv1
