"""The console's screens: the main one, its modals, help and the too-small notice."""
