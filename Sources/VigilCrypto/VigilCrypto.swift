// VigilCrypto: the only importer of OpenSSL.
import COpenSSL
