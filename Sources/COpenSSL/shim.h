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
#include <openssl/param_build.h>
#include <openssl/kdf.h>
#include <openssl/ec.h>
#include <openssl/dh.h>
#include <openssl/bn.h>

// OSSL_PARAM arrays keep the key pointer they were built with. Swift bridges a string macro to a temporary C
// string that dies after the call, so these return the macro's static literal itself.
static inline const char *vigil_param_group_name(void) { return OSSL_PKEY_PARAM_GROUP_NAME; }
static inline const char *vigil_param_public_key(void) { return OSSL_PKEY_PARAM_PUB_KEY; }
static inline const char *vigil_param_private_key(void) { return OSSL_PKEY_PARAM_PRIV_KEY; }
static inline const char *vigil_param_encoded_public_key(void) { return OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY; }
static inline const char *vigil_param_mac_digest(void) { return OSSL_MAC_PARAM_DIGEST; }

// Selections are macros built from other macros with `|`, which Swift does not import.
static inline int vigil_selection_public_key(void) { return EVP_PKEY_PUBLIC_KEY; }
static inline int vigil_selection_keypair(void) { return EVP_PKEY_KEYPAIR; }

#endif
