/// What vigild tells systemd (SystemdNotifier): one STATUS= line naming each entry's active peer.
extension StatusReport {
    /// "LAB/10 established with 192.0.2.11, BRANCH/20 connecting to 198.51.100.2 (attempt 2)": shown by
    /// `systemctl status`.
    public var systemdStatus: String {
        guard !entries.isEmpty else { return "no crypto-map entries" }
        return entries.map { "\($0.map)/\($0.sequence) \($0.state)" }.joined(separator: ", ")
    }
}
