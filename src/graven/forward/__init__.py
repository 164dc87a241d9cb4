"""Forwarding the trail to systems the application's operators do not control (SIEMs, syslog,
streams, files): in order, at least once, each batch carrying the proof that ties it to a signed
checkpoint. See :mod:`graven.forward.runner` for the delivery rules."""
