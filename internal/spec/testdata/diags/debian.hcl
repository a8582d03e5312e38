image "a" {
  from = "scratch"
  packages {
    debian {
      suite    = "book worm"
      packages = []
    }
  }
  packages {
    debian {
      suite    = "bookworm"
      packages = ["python3"]
    }
  }
}

image "b" {
  from = "scratch"
  packages {
    debian {
      suite      = "bookworm"
      packages   = ["python3 | python2"]
      repository = "ftp://x"
    }
  }
}

image "c" {
  from = "scratch"
  packages {}
}
