# This file is maintained by kiln: "kiln lock" writes it, and so does the first bake.
# It pins every OS package of the images to a version and the SHA-256 of its file;
# "kiln lock -update" moves it forward. Commit it with the spec.

debian "node" {
  arch         = "amd64"
  packages     = ["nodejs"]
  repositories = ["http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian bookworm-updates main", "http://deb.debian.org/debian-security bookworm-security main"]

  package "gcc-12-base" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/gcc-12-base_12.2.0-14+deb12u1_amd64.deb"
    size    = 37596
    sha256  = "1896a2aacf4ad681ff5eacc24a5b0ca4d5d9c9b9c9e4b6de5197bc1e116ea619"
  }

  package "libbrotli1" {
    version = "1.0.9-2+deb12u1"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/b/brotli/libbrotli1_1.0.9-2+deb12u1_amd64.deb"
    size    = 274704
    sha256  = "e27b3d655fa6fadd7a56f706687e94573c0af68b7d6df394a32a381a3a6c6d8b"
  }

  package "libc-ares2" {
    version = "1.18.1-3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/c/c-ares/libc-ares2_1.18.1-3_amd64.deb"
    size    = 102484
    sha256  = "087fd5c2ac883202e1786ab45617cdab7f77bc7f060d58cca177ddf6b6c3fa73"
  }

  package "libc6" {
    version = "2.36-9+deb12u14"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb"
    size    = 2759320
    sha256  = "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"
  }

  package "libgcc-s1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libgcc-s1_12.2.0-14+deb12u1_amd64.deb"
    size    = 49856
    sha256  = "3016e62cb4b7cd8038822870601f5ed131befe942774d0f745622cc77d8a88f7"
  }

  package "libicu72" {
    version = "72.1-3+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/i/icu/libicu72_72.1-3+deb12u1_amd64.deb"
    size    = 9376124
    sha256  = "f7f6f99c6d7b025914df2447fc93e11d22c44c0c8bdd8b6f36691c9e7ddcef88"
  }

  package "libnghttp2-14" {
    version = "1.52.0-1+deb12u3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/nghttp2/libnghttp2-14_1.52.0-1+deb12u3_amd64.deb"
    size    = 72404
    sha256  = "5a5736cee57e51c1baed869979e6ecdbc6495e939e33203d6cfe3b6e5a149e3f"
  }

  package "libnode108" {
    version = "18.20.4+dfsg-1~deb12u3"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/n/nodejs/libnode108_18.20.4+dfsg-1~deb12u3_amd64.deb"
    size    = 10633176
    sha256  = "4d1b4ba623b2f65a1b8a9524d3ecccd535388acbac1f9ce810eab017bbc01036"
  }

  package "libssl3" {
    version = "3.0.22-1~deb12u2"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_amd64.deb"
    size    = 2039888
    sha256  = "cb4784740daa9b3b0eaea2b444bbefa686794afbbf3d678d238c1fd9875f2efd"
  }

  package "libstdc++6" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libstdc++6_12.2.0-14+deb12u1_amd64.deb"
    size    = 612604
    sha256  = "5cd3171216d4ab0fc911cfe9c35509bf2dd8f47761c43b7f6a4296701551a24d"
  }

  package "libuv1" {
    version = "1.44.2-1+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libu/libuv1/libuv1_1.44.2-1+deb12u1_amd64.deb"
    size    = 135616
    sha256  = "204f0e13354b44e6d19317887a53dab6f26696e8d95838db970b81f2a393f7fd"
  }

  package "node-acorn" {
    version = "8.8.1+ds+~cs25.17.7-2"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/a/acorn/node-acorn_8.8.1+ds+~cs25.17.7-2_all.deb"
    size    = 128252
    sha256  = "5c6814cf6536892b3a93cc72a0a3792beb0d3f6be3d69f499ca7d764583479a9"
  }

  package "node-busboy" {
    version = "1.6.0+~cs2.6.0-2"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/node-busboy/node-busboy_1.6.0+~cs2.6.0-2_all.deb"
    size    = 16852
    sha256  = "50934c61be2a090131f16420b6422d5c03d840a8595fab36b29eb86c46928713"
  }

  package "node-cjs-module-lexer" {
    version = "1.2.2+dfsg-5"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/node-cjs-module-lexer/node-cjs-module-lexer_1.2.2+dfsg-5_all.deb"
    size    = 30112
    sha256  = "8393ae2e6b596068bd13b165a678fb33a3d5e58de6571fa5370d30b20b7b3e5a"
  }

  package "node-undici" {
    version = "5.15.0+dfsg1+~cs20.10.9.3-1+deb12u4"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/node-undici/node-undici_5.15.0+dfsg1+~cs20.10.9.3-1+deb12u4_all.deb"
    size    = 284676
    sha256  = "78ec8918d63e365bbdec6edd35bebec9e20cc931f084f24e8673badf191d100c"
  }

  package "node-xtend" {
    version = "4.0.2-3"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/node-xtend/node-xtend_4.0.2-3_all.deb"
    size    = 3932
    sha256  = "c64e37fbea40de012b59adbfa61e703b52c12713f34cbfd2d4049ebcc549f270"
  }

  package "nodejs" {
    version = "18.20.4+dfsg-1~deb12u3"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/n/nodejs/nodejs_18.20.4+dfsg-1~deb12u3_amd64.deb"
    size    = 322140
    sha256  = "97d0944c0da81b0acd4c6d58e7d5a2894f89aa66067400a86c9ecb0b76969ecc"
  }

  package "zlib1g" {
    version = "1:1.2.13.dfsg-1+deb12u1"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/z/zlib/zlib1g_1.2.13.dfsg-1+deb12u1_amd64.deb"
    size    = 86880
    sha256  = "ad9f1ea0537a32c9eaecc619563a9db596a5dee33afce8393b1083f22d301e1d"
  }
}
