"""`python -m ntkserve_server serve ...` is `ntkserve serve ...`."""

from ntkserve_server.cli import main

main()
