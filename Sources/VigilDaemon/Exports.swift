// The control API's types are part of the daemon's interface: whoever imports the daemon speaks its protocol too.
@_exported import VigilControl
