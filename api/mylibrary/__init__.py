"""My Library (マイライブラリ): patrons' passwords and sessions, answered by the internal API for the OPAC."""
