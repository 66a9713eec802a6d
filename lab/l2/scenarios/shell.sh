# Interactive shell on the serial console (use with --serial tty from an interactive L1).
LAB_ACTION=shell
