import Testing
@testable import VigilCrypto
