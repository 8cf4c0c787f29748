import Testing
@testable import VigilConfig
