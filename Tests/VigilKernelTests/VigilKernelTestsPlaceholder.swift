import Testing
@testable import VigilKernel
