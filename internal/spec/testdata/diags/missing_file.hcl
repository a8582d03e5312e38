image "web" {
  from = "./no-such-layout"

  copy "static/nope.css" {
    to = "/srv/nope.css"
  }

  file "/etc/motd" {
    content = file("motd.txt")
  }

  go {
    package = "./cmd/missing"
  }
}
