image "web" {
  from = "scratch"

  file "/etc/motd" {
    content = "Hello
    mode    = "0644"
  }

  user = "1:1"
}

service "web" {
  image = image.web
  port  = 8080
}
