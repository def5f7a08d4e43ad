# SPDX-License-Identifier: MIT
"""The web page on the results port: server-rendered views, static assets, thumbnails."""
