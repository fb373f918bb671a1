"""The internal API the OPAC calls for My Library: authenticated as a service, acting for one patron
session at a time. It runs in the internal app (:8001), never in the OPAC process."""
