#!/bin/bash
set -euo pipefail
systemctl enable --now acme-shop.service
