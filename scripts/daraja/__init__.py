"""The Daraja emulator (scripts/daraja-emulator is its command): a
loopback stand-in for Safaricom's M-Pesa API.  README.md documents every
API it answers, every test control and failure mode, and the command line."""
