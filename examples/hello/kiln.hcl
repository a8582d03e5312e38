# The hello service: a static Go binary on an empty base, with its static files and its
# greeting, run as two servers behind a front door. `kiln up` bakes and deploys it.

variable "version" {
  default     = "dev"
  description = "The version stamped into the binary."
}

variable "listen" {
  default     = "127.0.0.1:8080"
  description = "Where the service's front door listens."
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

service "hello" {
  image    = image.hello
  replicas = 2
  port     = 8080
  listen   = var.listen
  writable = ["/tmp"]

  health {
    http     = "/healthz"
    interval = "500ms"
  }

  update {
    strategy          = "rolling"
    max_surge         = 1
    min_healthy       = "1s"
    progress_deadline = "30s"
  }
}
