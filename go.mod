module github.com/vigil-safeguarding/vigil

go 1.26.8
