"""What users deploy: the build status, the .nav package, Triton model repositories, PyTriton."""
