"""The real-kernel lab: Debian's stock kernel under QEMU, the host's root as the guest's.

Nothing in the collection can be proven on the development machines, whose
kernel has no modules and no USB. This package boots a throw-away guest in a
few seconds, runs a job in it as root and brings back the job's output and
exit status. See ``python3 -m lab --help``.
"""
