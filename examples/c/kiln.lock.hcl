# This file is maintained by kiln: "kiln lock" writes it, and so does the first bake.
# It pins every OS package of the images to a version and the SHA-256 of its file;
# "kiln lock -update" moves it forward. Commit it with the spec.

debian "gcc" {
  arch         = "amd64"
  packages     = ["gcc", "libc6-dev"]
  repositories = ["http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian bookworm-updates main", "http://deb.debian.org/debian-security bookworm-security main"]

  package "binutils" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/binutils_2.40-2_amd64.deb"
    size    = 64980
    sha256  = "83c3e20b53e1fbd84d764c3ba27d26a0376e361ae5d7fb37120196934dd87424"
  }

  package "binutils-common" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/binutils-common_2.40-2_amd64.deb"
    size    = 2486664
    sha256  = "ab314134f43a0891a48f69a9bc33d825da748fa5e0ba2bebb7a5c491b026f1a0"
  }

  package "binutils-x86-64-linux-gnu" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/binutils-x86-64-linux-gnu_2.40-2_amd64.deb"
    size    = 2245848
    sha256  = "2d7ea8a570d768224d7f2424abbe6f373d2154865a1fa7f56c80d43ecf492521"
  }

  package "cpp" {
    version = "4:12.2.0-3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-defaults/cpp_12.2.0-3_amd64.deb"
    size    = 6836
    sha256  = "a63db920f7aa1857a57beab185423deffb6111fa09437a99bbb4ef724fb7ba78"
  }

  package "cpp-12" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/cpp-12_12.2.0-14+deb12u1_amd64.deb"
    size    = 9767788
    sha256  = "fedbb98e877adde83c983c6071537ea25ac52b277ac6e4637d85025949ca1454"
  }

  package "gcc" {
    version = "4:12.2.0-3"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-defaults/gcc_12.2.0-3_amd64.deb"
    size    = 5216
    sha256  = "bb63b0fb2797e2a3a294dab8a02614930c557ec1f4ea96637c244b8b5f87e630"
  }

  package "gcc-12" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/gcc-12_12.2.0-14+deb12u1_amd64.deb"
    size    = 19268852
    sha256  = "b46f33cc2ec245e435e043807038cecf4b201ef004800e9dfc1455240360e49d"
  }

  package "gcc-12-base" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/gcc-12-base_12.2.0-14+deb12u1_amd64.deb"
    size    = 37596
    sha256  = "1896a2aacf4ad681ff5eacc24a5b0ca4d5d9c9b9c9e4b6de5197bc1e116ea619"
  }

  package "libasan8" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libasan8_12.2.0-14+deb12u1_amd64.deb"
    size    = 2192652
    sha256  = "e7ac5d797d7d438a130674a8e463530f06aa02ecf919ca054d75eaa2f7849ec7"
  }

  package "libatomic1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libatomic1_12.2.0-14+deb12u1_amd64.deb"
    size    = 9376
    sha256  = "fbd4e154a6b444229ea002cc209df099209c0adc09102e5fd21239a3d2b55e2d"
  }

  package "libbinutils" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/libbinutils_2.40-2_amd64.deb"
    size    = 572104
    sha256  = "fcf55b99e5f8a78f3c8ce9b6957f1024f394cf20c196b100d308a57e43547710"
  }

  package "libc-dev-bin" {
    version = "2.36-9+deb12u14"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/glibc/libc-dev-bin_2.36-9+deb12u14_amd64.deb"
    size    = 48056
    sha256  = "f61d923b703401023bec2ac3d9d1c9ad7341930fbe11736f7f5ef64b489d03c4"
  }

  package "libc6" {
    version = "2.36-9+deb12u14"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb"
    size    = 2759320
    sha256  = "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"
  }

  package "libc6-dev" {
    version = "2.36-9+deb12u14"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/glibc/libc6-dev_2.36-9+deb12u14_amd64.deb"
    size    = 1903668
    sha256  = "0218fc2befcd784c1b0c6292c0a137ce89fad054efaa579ad083bee0f2c01aae"
  }

  package "libcc1-0" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libcc1-0_12.2.0-14+deb12u1_amd64.deb"
    size    = 41736
    sha256  = "4ee6009633003f47de98333ea7f7d8835ec563ae2ac4f30251dbfee04d75d46b"
  }

  package "libcom-err2" {
    version = "1.47.0-2+b2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/e/e2fsprogs/libcom-err2_1.47.0-2+b2_amd64.deb"
    size    = 20044
    sha256  = "a2bac7015e78fbc0c504df3e441f3a22292f1d2d77f9ccda760057f3690e22f2"
  }

  package "libcrypt-dev" {
    version = "1:4.4.33-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libx/libxcrypt/libcrypt-dev_4.4.33-2_amd64.deb"
    size    = 118144
    sha256  = "81ccd29130f75a9e3adabc80e61921abff42f76761e1f792fa2d1bb69af7f52f"
  }

  package "libcrypt1" {
    version = "1:4.4.33-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libx/libxcrypt/libcrypt1_4.4.33-2_amd64.deb"
    size    = 89464
    sha256  = "f5f60a5cdfd4e4eaa9438ade5078a57741a7a78d659fcb0c701204f523e8bd29"
  }

  package "libctf-nobfd0" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/libctf-nobfd0_2.40-2_amd64.deb"
    size    = 153384
    sha256  = "ef1dfcf22de41ea90ebd3d505447ccccd999e96b85aa777a1d7d981dc3b347aa"
  }

  package "libctf0" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/libctf0_2.40-2_amd64.deb"
    size    = 89796
    sha256  = "3fb7b6f326be3fae4a87a3d33b9269bd06c1e4346a24bd737f265067e3b7427f"
  }

  package "libgcc-12-dev" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libgcc-12-dev_12.2.0-14+deb12u1_amd64.deb"
    size    = 2437204
    sha256  = "d720259380a84f2ffc6fe516eff5cbe9c8a005138e8d6a5748747ba4b3404a82"
  }

  package "libgcc-s1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libgcc-s1_12.2.0-14+deb12u1_amd64.deb"
    size    = 49856
    sha256  = "3016e62cb4b7cd8038822870601f5ed131befe942774d0f745622cc77d8a88f7"
  }

  package "libgmp10" {
    version = "2:6.2.1+dfsg1-1.1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gmp/libgmp10_6.2.1+dfsg1-1.1_amd64.deb"
    size    = 562588
    sha256  = "187aedef2ed763f425c1e523753b9719677633c7eede660401739e9c893482bd"
  }

  package "libgomp1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libgomp1_12.2.0-14+deb12u1_amd64.deb"
    size    = 115772
    sha256  = "48fec46bda7f5b1638b9e959889bfbc20491247d402d120bb152687eb48143d7"
  }

  package "libgprofng0" {
    version = "2.40-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/b/binutils/libgprofng0_2.40-2_amd64.deb"
    size    = 812120
    sha256  = "a3c4092d84f19d13caf90f3c96eec53db8819f0e3a5247434944d71ed75fa53d"
  }

  package "libgssapi-krb5-2" {
    version = "1.20.1-2+deb12u5"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/k/krb5/libgssapi-krb5-2_1.20.1-2+deb12u5_amd64.deb"
    size    = 135168
    sha256  = "d8b87aea91b956b416c01a28c44ff6228315ae3b73de40acddac3dc5043607d2"
  }

  package "libisl23" {
    version = "0.25-1.1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/i/isl/libisl23_0.25-1.1_amd64.deb"
    size    = 683060
    sha256  = "ebff0b2f8b220c74224197523019366e97ee4770d464bebc48e4865114e4da0e"
  }

  package "libitm1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libitm1_12.2.0-14+deb12u1_amd64.deb"
    size    = 26140
    sha256  = "0ed5b35dfd1346cccbf065408ec789db6c44c1d0a16ae84533411dea09632979"
  }

  package "libjansson4" {
    version = "2.14-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/j/jansson/libjansson4_2.14-2_amd64.deb"
    size    = 40788
    sha256  = "3fc9742f9f1a37bcb9931df6074b4d1483419ef832ad5349f47323e75fc27864"
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

  package "liblsan0" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/liblsan0_12.2.0-14+deb12u1_amd64.deb"
    size    = 969300
    sha256  = "d234ab339c0ba31a4fb44e2334cf5a8d15b87f2c2f9e74fadfaa877f92dcf22a"
  }

  package "libmpc3" {
    version = "1.3.1-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/m/mpclib3/libmpc3_1.3.1-1_amd64.deb"
    size    = 51480
    sha256  = "d7f79544790e44f9b0c8cb9034a18c58d37f8702a15f32539050718679e52f80"
  }

  package "libmpfr6" {
    version = "4.2.0-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/m/mpfr4/libmpfr6_4.2.0-1_amd64.deb"
    size    = 700900
    sha256  = "37b7a2b4e78890b6a074777f27b96c84f58e81558ba08410c2b6c0ca4a4ad77b"
  }

  package "libnsl-dev" {
    version = "1.3.0-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libn/libnsl/libnsl-dev_1.3.0-2_amd64.deb"
    size    = 66436
    sha256  = "bb81a188c119cd7fdebae723cbc95887b6c549b2fe4fb7e268a9c8846444da99"
  }

  package "libnsl2" {
    version = "1.3.0-2"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libn/libnsl/libnsl2_1.3.0-2_amd64.deb"
    size    = 39480
    sha256  = "c0d83437fdb016cb289436f49f28a36be44b3e8f1f2498c7e3a095f709c0d6f8"
  }

  package "libquadmath0" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libquadmath0_12.2.0-14+deb12u1_amd64.deb"
    size    = 144616
    sha256  = "3f0c9a4c730da2fdab001cae596625438598fd2996d29d888feeb4c1cdc9011f"
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

  package "libtirpc-common" {
    version = "1.3.3+ds-1"
    arch    = "all"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libt/libtirpc/libtirpc-common_1.3.3+ds-1_all.deb"
    size    = 14048
    sha256  = "3e3ef129b4bf61513144236e15e1b4ec57fa5ae3dc8a72137abdbefb7a63af85"
  }

  package "libtirpc-dev" {
    version = "1.3.3+ds-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libt/libtirpc/libtirpc-dev_1.3.3+ds-1_amd64.deb"
    size    = 191428
    sha256  = "03326473eed54ffa27efae19aa5d6aeb402930968f869f318445513093691d55"
  }

  package "libtirpc3" {
    version = "1.3.3+ds-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/libt/libtirpc/libtirpc3_1.3.3+ds-1_amd64.deb"
    size    = 85192
    sha256  = "2a46d5a5e9486da11ffeff5740931740d6deae4f92cd6098df060dc5dff1e1c7"
  }

  package "libtsan2" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libtsan2_12.2.0-14+deb12u1_amd64.deb"
    size    = 2196972
    sha256  = "06906663d644a75a1a836382ecd80b61461129c06f02935ce408b25809f6c958"
  }

  package "libubsan1" {
    version = "12.2.0-14+deb12u1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/g/gcc-12/libubsan1_12.2.0-14+deb12u1_amd64.deb"
    size    = 883056
    sha256  = "744f52adf00ffd45d44806b1c7e802a36bd27e479c9bc8457128fde357faa530"
  }

  package "libzstd1" {
    version = "1.5.4+dfsg2-5+deb12u1"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5+deb12u1_amd64.deb"
    size    = 290236
    sha256  = "67dc1ee693e5c22b1a2be2bb70d8244b040836ce3f5dd79e006f7806bc3d9f1c"
  }

  package "linux-libc-dev" {
    version = "6.1.192-3"
    arch    = "amd64"
    suite   = "bookworm-security"
    url     = "http://deb.debian.org/debian-security/pool/updates/main/l/linux/linux-libc-dev_6.1.192-3_amd64.deb"
    size    = 2458036
    sha256  = "1b699a9cf27fd36f295b8f7615b73cea8d2d11d43c275c2aca1f4a7a7d14c4ea"
  }

  package "rpcsvc-proto" {
    version = "1.4.3-1"
    arch    = "amd64"
    suite   = "bookworm"
    url     = "http://deb.debian.org/debian/pool/main/r/rpcsvc-proto/rpcsvc-proto_1.4.3-1_amd64.deb"
    size    = 63268
    sha256  = "32ac0692694f8a34cc90c895f4fc739680fb2ef0e2d4870a68833682bf1c81a3"
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
