"""STAC catalogs: profiles (presets), search, asset/radiometry rules and href signing."""
