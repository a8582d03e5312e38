image "build" {
  from = "debian:bookworm-slim"

  run "cc" {
    command = ["cc", "-o", "/out/hello", "hello.c"]
    inputs  = ["hello.c", "../outside.c", ".kiln/token", "greeting.txt"]
    outputs = ["/out", "/", "/proc/self", "../up", "/out/bin"]
    cache   = ["/out/cache", "relative"]
  }

  run "cc" {
    command = []
    outputs = []
  }
}

image "app" {
  from = "scratch"

  copy "/out/hello" {
    from = image.biuld
    to   = "/app/hello"
  }

  copy "out/hello" {
    from = "build"
    to   = "/app/hello"
  }
}

image "a" {
  from = image.b
}

image "b" {
  from = "scratch"

  copy "/etc/motd" {
    from = image.a
    to   = "/etc/motd"
  }
}

image "c" {
  from = "scratch"

  run "x" {
    command = ["/bin/true"]
    outputs = ["/out"]
  }
}
