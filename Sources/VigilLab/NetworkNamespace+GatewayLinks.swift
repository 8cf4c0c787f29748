import Foundation

extension NetworkNamespace {
    /// Gives the namespace a gateway's two sides without a second namespace: `wan` (a veth whose peer `wan`+"p"
    /// stays here, up, with `wanAddress`) and `lan` (likewise) holding each of `localAddresses` as a /32 (the local
    /// protected addresses routes use as source hints). One `ip -batch` call, so thousands of addresses take
    /// milliseconds.
    public func addGatewayLinks(wan: String = "wan0", wanAddress: String = "192.0.2.1/24", lan: String = "lan0",
                                localAddresses: [String]) throws {
        var batch = [
            "link add \(wan) type veth peer name \(wan)p", "link add \(lan) type veth peer name \(lan)p",
            "addr add \(wanAddress) dev \(wan)",
            "link set \(wan) up", "link set \(wan)p up", "link set \(lan) up", "link set \(lan)p up",
        ]
        batch += localAddresses.map { "addr add \($0)/32 dev \(lan)" }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("vigil-lab-\(name).batch")
        try batch.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try ip("-batch", file.path)
    }
}
