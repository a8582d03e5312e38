image "web" {
  from = "scratch"
}

service "bad" {
  image         = image.web
  port          = 8080
  listen        = "127.0.0.1:9100"
  hosts         = ["https://example.com", "example.com:80", "a.*.example.com", "Example.COM", "example.com."]
  path          = "/api/../x"
  drain_timeout = "11m"

  tls {
    certificate   = "certs/web.pem"
    acme          = true
    acme_email    = "Ops <ops@example.com>"
    hsts          = "forever"
    redirect      = false
    redirect_http = ":8080"
  }
}

service "nohosts" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:9200"
  tls {
    acme           = true
    acme_directory = "http://127.0.0.1:14000/dir"
  }
}

service "wild" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:9300"
  hosts  = ["*.example.com", "localhost"]
  tls {
    acme       = true
    acme_roots = "pebble.minica.pem"
  }
}

service "keyless" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:9400"
  path   = "api"
  tls {
    certificate = "certs/web.pem"
    acme_email  = "ops@example.com"
  }
}

service "site" {
  image  = image.web
  port   = 8080
  listen = ":443"
  hosts  = ["example.com"]
  tls {
    certificate = "certs/site.pem"
    key         = "certs/site.key"
  }
}

service "www" {
  image  = image.web
  port   = 8080
  listen = "0.0.0.0:443"
  hosts  = ["EXAMPLE.com"]
  tls {
    certificate = "certs/site.pem"
    key         = "certs/site.key"
  }
}

service "blog" {
  image  = image.web
  port   = 8080
  listen = ":443"
  hosts  = ["example.com"]
  path   = "/blog/"
  tls {
    certificate = "certs/blog.pem"
    key         = "certs/blog.key"
  }
}

service "plain" {
  image  = image.web
  port   = 8080
  listen = ":443"
  hosts  = ["plain.example.com"]
}

service "acme-a" {
  image  = image.web
  port   = 8080
  listen = ":443"
  hosts  = ["a.example.com"]
  tls {
    acme       = true
    acme_email = "a@example.com"
  }
}

service "acme-b" {
  image  = image.web
  port   = 8080
  listen = ":443"
  hosts  = ["b.example.com"]
  tls {
    acme       = true
    acme_email = "b@example.com"
  }
}

service "noredirect" {
  image  = image.web
  port   = 8080
  listen = ":443"
  hosts  = ["c.example.com"]
  tls {
    certificate = "certs/c.pem"
    key         = "certs/c.key"
    redirect    = false
  }
}

service "api" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:443"
}

service "shop" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:8443"
  tls {
    certificate   = "certs/shop.pem"
    key           = "certs/shop.key"
    redirect_http = "127.0.0.1:8080"
  }
}

service "old" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:8080"
}

service "shop2" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:9443"
  tls {
    certificate   = "certs/shop.pem"
    key           = "certs/shop.key"
    redirect_http = "127.0.0.1:8080"
  }
}
