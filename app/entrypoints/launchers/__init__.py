"""One launcher per development service, for `app.entrypoints.devstack.Stack` to put together.

`processes` runs the children (each in its own process group, stopped on exit) and waits
for them with a deadline; `binaries` finds the server programs; `postgres`, `openbao`,
`opa`, `simulator` and `apps` each start one kind of service and wait until it answers.
"""
