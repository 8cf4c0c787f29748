/// The version `vigil --version` and `vigild --version` print.
public enum VigilVersion {
    public static let current = "0.1.0"
}
