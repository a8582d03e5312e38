image "py" {
  from = "scratch"
  file "/srv/server.py" {
    content = "print('hi')"
  }
  packages {
    debian {
      suite    = "bookworm"
      packages = ["python3", "ca-certificates"]
    }
  }
  entrypoint = ["/usr/bin/python3", "/srv/server.py"]
}

image "mirror" {
  from = "scratch"
  packages {
    debian {
      suite      = "bookworm"
      repository = "http://deb.debian.org/debian"
      packages   = ["libc6=2.36-9+deb12u14"]
      docs       = true
    }
  }
}
