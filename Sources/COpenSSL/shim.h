#ifndef VIGIL_COPENSSL_SHIM_H
#define VIGIL_COPENSSL_SHIM_H
// OpenSSL headers Vigil uses. Static inline wrappers appear here only for what Swift cannot import
// (function-like macros, variadic functions); each is prefixed `vigil_` and says why it exists.
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/kdf.h>
#include <openssl/ec.h>
#include <openssl/dh.h>
#include <openssl/bn.h>

#endif
