# This file is maintained by kiln: "kiln lock" writes it, and so does the first bake.
# It pins every OS package of the images to a version and the SHA-256 of its file;
# "kiln lock -update" moves it forward. Commit it with the spec.

debian "python" {
  arch         = "amd64"
  packages     = ["python3"]
  repositories = ["http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian bookworm-updates main", "http://deb.debian.org/debian-security bookworm-security main"]

  package "dpkg" {
    version = "1.21.23"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/d/dpkg/dpkg_1.21.23_amd64.deb"
    size    = 1567804
    sha256  = "f89e9f8d1a4a50ade44be3ed59a6ec55460fce205d2f8520c5c492137c5b609b"
  }

  package "gcc-12-base" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/gcc-12-base_12.2.0-14+deb12u1_amd64.deb"
    size    = 37596
    sha256  = "1896a2aacf4ad681ff5eacc24a5b0ca4d5d9c9b9c9e4b6de5197bc1e116ea619"
  }

  package "libacl1" {
    version = "2.3.1-3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/a/acl/libacl1_2.3.1-3_amd64.deb"
    size    = 31488
    sha256  = "8be9df5795114bfe90e2be3d208ef47a5edd3fc7b3e20d387a597486d444e5e2"
  }

  package "libbz2-1.0" {
    version = "1.0.8-5+b1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/bzip2/libbz2-1.0_1.0.8-5+b1_amd64.deb"
    size    = 47348
    sha256  = "54149da3f44b22d523b26b692033b84503d822cc5122fed606ea69cc83ca5aeb"
  }

  package "libc6" {
    version = "2.36-9+deb12u14"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb"
    size    = 2759320
    sha256  = "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"
  }

  package "libcom-err2" {
    version = "1.47.0-2+b2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/e/e2fsprogs/libcom-err2_1.47.0-2+b2_amd64.deb"
    size    = 20044
    sha256  = "a2bac7015e78fbc0c504df3e441f3a22292f1d2d77f9ccda760057f3690e22f2"
  }

  package "libcrypt1" {
    version = "1:4.4.33-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libx/libxcrypt/libcrypt1_4.4.33-2_amd64.deb"
    size    = 89464
    sha256  = "f5f60a5cdfd4e4eaa9438ade5078a57741a7a78d659fcb0c701204f523e8bd29"
  }

  package "libdb5.3" {
    version = "5.3.28+dfsg2-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/d/db5.3/libdb5.3_5.3.28+dfsg2-1_amd64.deb"
    size    = 697412
    sha256  = "7dc5127b8dd0da80e992ba594954c005ae4359d839a24eb65d0d8129b5235c84"
  }

  package "libexpat1" {
    version = "2.5.0-1+deb12u5"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/e/expat/libexpat1_2.5.0-1+deb12u5_amd64.deb"
    size    = 107940
    sha256  = "cae5ded666d8573dd33060bc66fbac21eea8b101a6b56e2af8bd590fcfa65d79"
  }

  package "libffi8" {
    version = "3.4.4-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libf/libffi/libffi8_3.4.4-1_amd64.deb"
    size    = 22856
    sha256  = "6d9f6c25c30efccce6d4bceaa48ea86c329a3432abb360a141f76ac223a4c34a"
  }

  package "libgcc-s1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libgcc-s1_12.2.0-14+deb12u1_amd64.deb"
    size    = 49856
    sha256  = "3016e62cb4b7cd8038822870601f5ed131befe942774d0f745622cc77d8a88f7"
  }

  package "libgssapi-krb5-2" {
    version = "1.20.1-2+deb12u5"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/k/krb5/libgssapi-krb5-2_1.20.1-2+deb12u5_amd64.deb"
    size    = 135168
    sha256  = "d8b87aea91b956b416c01a28c44ff6228315ae3b73de40acddac3dc5043607d2"
  }

  package "libk5crypto3" {
    version = "1.20.1-2+deb12u5"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/k/krb5/libk5crypto3_1.20.1-2+deb12u5_amd64.deb"
    size    = 79712
    sha256  = "7b6e47d15c5c9cdcd456137533d8308aeba608a54cec73b28bd59bfc4b54cf06"
  }

  package "libkeyutils1" {
    version = "1.6.3-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/k/keyutils/libkeyutils1_1.6.3-2_amd64.deb"
    size    = 8808
    sha256  = "cfac89e6a7a54ff3c6a4f843310e25efeddaa771baeae470bd98bd588c373563"
  }

  package "libkrb5-3" {
    version = "1.20.1-2+deb12u5"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/k/krb5/libkrb5-3_1.20.1-2+deb12u5_amd64.deb"
    size    = 332280
    sha256  = "c90801be09701af221b54dd502a59cb378b7284ff31e480738baca317d2f7653"
  }

  package "libkrb5support0" {
    version = "1.20.1-2+deb12u5"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/k/krb5/libkrb5support0_1.20.1-2+deb12u5_amd64.deb"
    size    = 33212
    sha256  = "8b9c05f2d8d461a10d657b118f572af5bf8fd6c8f93dcef81e852c5ab0f428ab"
  }

  package "liblzma5" {
    version = "5.4.1-1+deb12u2"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/x/xz-utils/liblzma5_5.4.1-1+deb12u2_amd64.deb"
    size    = 205796
    sha256  = "3d8c29c8c21ec6007635e1b2591edf98b771c9572a085968f47452b33040f384"
  }

  package "libmd0" {
    version = "1.0.4-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libm/libmd/libmd0_1.0.4-2_amd64.deb"
    size    = 29456
    sha256  = "03539fd30c509e27101d13a56e52eda9062bdf1aefe337c07ab56def25a13eab"
  }

  package "libncursesw6" {
    version = "6.4-4"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/ncurses/libncursesw6_6.4-4_amd64.deb"
    size    = 133824
    sha256  = "98fa7a53dc565a38b65fb70422ad08001bf5361d8fbc74255280c329996a6bec"
  }

  package "libnsl2" {
    version = "1.3.0-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libn/libnsl/libnsl2_1.3.0-2_amd64.deb"
    size    = 39480
    sha256  = "c0d83437fdb016cb289436f49f28a36be44b3e8f1f2498c7e3a095f709c0d6f8"
  }

  package "libpcre2-8-0" {
    version = "10.42-1+deb12u2"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/p/pcre2/libpcre2-8-0_10.42-1+deb12u2_amd64.deb"
    size    = 261628
    sha256  = "d2f7edfcc7689b9e0761c2742cc824ac86a20768bc5e8057818dc6875291fe76"
  }

  package "libpython3-stdlib" {
    version = "3.11.2-1+b1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/p/python3-defaults/libpython3-stdlib_3.11.2-1+b1_amd64.deb"
    size    = 9312
    sha256  = "4e58891d5c951a1e360ed9eaa814413cb5e84deadce3f08e801ac680434c786e"
  }

  package "libpython3.11-minimal" {
    version = "3.11.2-6+deb12u9"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/p/python3.11/libpython3.11-minimal_3.11.2-6+deb12u9_amd64.deb"
    size    = 820928
    sha256  = "69f41cfa3f4ba17284e538f843069d7529c53c207d2ae17a5b02785944870e33"
  }

  package "libpython3.11-stdlib" {
    version = "3.11.2-6+deb12u9"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/p/python3.11/libpython3.11-stdlib_3.11.2-6+deb12u9_amd64.deb"
    size    = 1798408
    sha256  = "10f13e000ee757f5f2d2d3569f9e30546214a0c850acd78695feae373bfa3e53"
  }

  package "libreadline8" {
    version = "8.2-1.3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/r/readline/libreadline8_8.2-1.3_amd64.deb"
    size    = 165760
    sha256  = "e02ebbd3701cf468dbf98d6d917fbe0325e881f07fe8b316150c8d2a64486e66"
  }

  package "libselinux1" {
    version = "3.4-1+b6"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libs/libselinux/libselinux1_3.4-1+b6_amd64.deb"
    size    = 73720
    sha256  = "2b07f5287b9105f40158b56e4d70cc1652dac56a408f3507b4ab3d061eed425f"
  }

  package "libsqlite3-0" {
    version = "3.40.1-2+deb12u2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/s/sqlite3/libsqlite3-0_3.40.1-2+deb12u2_amd64.deb"
    size    = 838808
    sha256  = "a8d78b40e9b4e422224aeebfe0e4dfc243f6acf3532490b0c05480d4283d41e2"
  }

  package "libssl3" {
    version = "3.0.22-1~deb12u2"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_amd64.deb"
    size    = 2039888
    sha256  = "cb4784740daa9b3b0eaea2b444bbefa686794afbbf3d678d238c1fd9875f2efd"
  }

  package "libtinfo6" {
    version = "6.4-4"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/n/ncurses/libtinfo6_6.4-4_amd64.deb"
    size    = 331352
    sha256  = "072d908f38f51090ca28ca5afa3b46b2957dc61fe35094c0b851426859a49a51"
  }

  package "libtirpc-common" {
    version = "1.3.3+ds-1"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libt/libtirpc/libtirpc-common_1.3.3+ds-1_all.deb"
    size    = 14048
    sha256  = "3e3ef129b4bf61513144236e15e1b4ec57fa5ae3dc8a72137abdbefb7a63af85"
  }

  package "libtirpc3" {
    version = "1.3.3+ds-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libt/libtirpc/libtirpc3_1.3.3+ds-1_amd64.deb"
    size    = 85192
    sha256  = "2a46d5a5e9486da11ffeff5740931740d6deae4f92cd6098df060dc5dff1e1c7"
  }

  package "libuuid1" {
    version = "2.38.1-5+deb12u3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/u/util-linux/libuuid1_2.38.1-5+deb12u3_amd64.deb"
    size    = 28784
    sha256  = "5fff398321da62d28a842bcbabd193d72ae21724962c029dc32b1dc6b2deaeaf"
  }

  package "libzstd1" {
    version = "1.5.4+dfsg2-5+deb12u1"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5+deb12u1_amd64.deb"
    size    = 290236
    sha256  = "67dc1ee693e5c22b1a2be2bb70d8244b040836ce3f5dd79e006f7806bc3d9f1c"
  }

  package "media-types" {
    version = "10.0.0"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/m/media-types/media-types_10.0.0_all.deb"
    size    = 26136
    sha256  = "aaa46dcb3b39948ae2e0fdb72cfcb2f48c0b59f19785a3da8045c05eb19955dd"
  }

  package "python3" {
    version = "3.11.2-1+b1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/p/python3-defaults/python3_3.11.2-1+b1_amd64.deb"
    size    = 26300
    sha256  = "33f6dafbd1a6902d9063172ec7dbd4b2225e12009e0d7ec5c933a72c2f5f3b74"
  }

  package "python3-minimal" {
    version = "3.11.2-1+b1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/p/python3-defaults/python3-minimal_3.11.2-1+b1_amd64.deb"
    size    = 26312
    sha256  = "30f9618670e686d781afbfc713eb0830c29d2819e9cb2a0488800dad6bb99faa"
  }

  package "python3.11" {
    version = "3.11.2-6+deb12u9"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/p/python3.11/python3.11_3.11.2-6+deb12u9_amd64.deb"
    size    = 575032
    sha256  = "4facf334e0e0830a87013852f8c3a1cfee11ad702f72f240adf9ad5b9a334e7c"
  }

  package "python3.11-minimal" {
    version = "3.11.2-6+deb12u9"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/p/python3.11/python3.11-minimal_3.11.2-6+deb12u9_amd64.deb"
    size    = 2054684
    sha256  = "b5f855ab922dfcd5d1a3223b2118c3dae13ffc7751b0cd5dc24740386323a33a"
  }

  package "readline-common" {
    version = "8.2-1.3"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/r/readline/readline-common_8.2-1.3_all.deb"
    size    = 68988
    sha256  = "69317523fe56429aa361545416ad339d138c1500e5a604856a80dd9074b4e35c"
  }

  package "tar" {
    version = "1.34+dfsg-1.2+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/t/tar/tar_1.34+dfsg-1.2+deb12u1_amd64.deb"
    size    = 836288
    sha256  = "24fb92e98c2969171f81a8b589263d705f6b1670f95d121cd74c810d4605acc3"
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
