# The hello service's server image: a static Go binary on an empty base, with its static
# files and its greeting. Bake it with `kiln bake`.

variable "version" {
  default     = "dev"
  description = "The version stamped into the binary."
}

image "hello" {
  from = "scratch"

  go {
    package = "."
    ldflags = ["-s", "-w", "-X main.version=${var.version}"]
  }

  copy "static" {
    to = "/srv/static"
  }

  file "/etc/hello/greeting.txt" {
    content = "Hello from kiln!\n"
  }

  env = {
    STATIC_DIR    = "/srv/static"
    GREETING_FILE = "/etc/hello/greeting.txt"
  }
  expose = [8080]
  user   = "65532:65532"
}
