# SPDX-License-Identifier: MIT
"""Slaves announce themselves over Avahi (mDNS/DNS-SD) and the master browses for them."""
