// VigilNetlink: the only importer of libnl.
import CNetlink
