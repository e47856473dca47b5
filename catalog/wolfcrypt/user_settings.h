/* user_settings.h for Cabin's wolfCrypt catalog entries (wolfcrypt-bench, wolfcrypt-test).
 *
 * Compiled with -DWOLFSSL_USER_SETTINGS by catalog/wolfcrypt/build.sh against the wolfSSL
 * source shipped by the `wolfssl-sys` crate. CABIN_WOLF_ASM selects the assembly build
 * (x86-64 assembly, AES-NI, AVX1/AVX2); without it everything is portable C.
 * The RNG seeds from getrandom(2) and nothing touches the file system, so both programs
 * run confined without any --allow-read directory. */
#ifndef CABIN_WOLFCRYPT_USER_SETTINGS_H
#define CABIN_WOLFCRYPT_USER_SETTINGS_H

#define WOLFCRYPT_ONLY
#define SINGLE_THREADED
#define NO_FILESYSTEM
#define WOLFSSL_GETRANDOM
#define HAVE_HASHDRBG
#define USE_CERT_BUFFERS_2048
#define USE_CERT_BUFFERS_256

/* Hashes and MACs. */
#define WOLFSSL_SHA224
#define WOLFSSL_SHA384
#define WOLFSSL_SHA512
#define WOLFSSL_SHA3
#define HAVE_HKDF

/* Ciphers. */
#define HAVE_AES_CBC
#define HAVE_AESGCM
#define GCM_TABLE_4BIT
#define WOLFSSL_AES_COUNTER
#define WOLFSSL_AES_DIRECT
#define HAVE_AES_ECB
#define HAVE_CHACHA
#define HAVE_POLY1305

/* Public key. */
#define WOLFSSL_SP_MATH_ALL
#define WOLFSSL_HAVE_SP_RSA
#define WOLFSSL_HAVE_SP_DH
#define WOLFSSL_HAVE_SP_ECC
#define WOLFSSL_KEY_GEN
#define WC_RSA_PSS
#define WC_RSA_BLINDING
#define HAVE_ECC
#define ECC_TIMING_RESISTANT
#define ECC_SHAMIR
#define HAVE_CURVE25519
#define HAVE_ED25519
#define HAVE_FFDHE_2048
#define TFM_TIMING_RESISTANT

/* Left out: legacy or unneeded. */
#define NO_DSA
#define NO_RC4
#define NO_MD4
#define NO_DES3
#define NO_PSK
#define NO_OLD_TLS
#define WOLFSSL_NO_SHAKE128
#define WOLFSSL_NO_SHAKE256

#ifdef CABIN_WOLF_ASM
    #define WOLFSSL_X86_64_BUILD
    #define USE_INTEL_SPEEDUP
    #define WOLFSSL_AESNI
    #define HAVE_INTEL_AVX1
    #define HAVE_INTEL_AVX2
    #define WOLFSSL_SP_X86_64
    #define WOLFSSL_SP_X86_64_ASM
    #define WOLFSSL_SP_ASM
#else
    #define WOLFSSL_NO_ASM
    #define TFM_NO_ASM
#endif

#endif
