import Testing
@testable import VigilLiveness
