#!/usr/bin/env bash
# make-fs-image.sh — regenerate the binary demo files served by smolhttpd.
#
# Usage: scripts/make-fs-image.sh [OUTDIR]     (default: fs_image)
#
# Provenance of every binary file in fs_image/. Everything is synthesised
# locally from built-in generators (no downloaded media):
#   img/*.jpg(e)        ImageMagick (convert): gradients / plasma / drawing + label
#   video/*.mp4         ffmpeg lavfi sources -> libx264 (yuv420p, main) + AAC sine
#   pdf/OWASP.pdf       Ghostscript pdfwrite from a PostScript file written here
#   Programa/putty.msi  msitools wixl from a .wxs written here
# The hand-written HTML files (index.html, 404.html, text/*) are NOT produced
# by this script; they live in the repository as-is.
#
# Needs: imagemagick ffmpeg ghostscript wixl msitools (+ poppler-utils to verify)
#   apt-get install imagemagick ffmpeg ghostscript wixl msitools poppler-utils
#
# Outputs are made as deterministic as practical (-strip, fixed -seed,
# ffmpeg -fflags +bitexact -map_metadata -1, single-threaded x264, fixed
# dates and no random ids in the PDF, fixed GUIDs in the MSI).
set -euo pipefail

OUT=${1:-fs_image}
mkdir -p "$OUT/img" "$OUT/video" "$OUT/pdf" "$OUT/Programa"

# Prefer the real ImageMagick binary if a wrapper shadows it on PATH.
CONVERT=convert
if [ -x /usr/bin/convert ]; then CONVERT=/usr/bin/convert; fi
for t in "$CONVERT" ffmpeg gs wixl; do
  command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
"$CONVERT" -version | grep -q ImageMagick || { echo "convert is not ImageMagick" >&2; exit 1; }

export SOURCE_DATE_EPOCH=1704067200   # 2024-01-01T00:00:00Z
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

FONT=Helvetica-Bold   # URW base35 font via ghostscript fonts

# ---------------------------------------------------------------- images
echo "== img/car.jpeg"
"$CONVERT" -size 640x480 gradient:'#87ceeb-#f0f8ff' \
  -fill '#555555' -draw 'rectangle 0,340 640,480' \
  -fill '#ffffff' -draw 'rectangle 40,405 120,415 rectangle 200,405 280,415 rectangle 360,405 440,415 rectangle 520,405 600,415' \
  -fill '#c0392b' -draw 'roundrectangle 150,250 490,340 20,20' \
  -fill '#c0392b' -draw 'roundrectangle 230,190 420,260 25,25' \
  -fill '#aee3ff' -draw 'rectangle 250,205 320,250 rectangle 335,205 400,250' \
  -fill '#222222' -draw 'circle 230,340 230,385 circle 410,340 410,385' \
  -fill '#bbbbbb' -draw 'circle 230,340 230,360 circle 410,340 410,360' \
  -fill '#ffd700' -draw 'circle 475,285 475,297' \
  -font "$FONT" -pointsize 64 -fill '#1a1a1a' -gravity north -annotate +0+30 'car' \
  -strip -sampling-factor 4:2:0 -quality 85 "$OUT/img/car.jpeg"

echo "== img/perro.jpg"
"$CONVERT" -seed 4242 -size 480x360 plasma:'#8fbc8f-#f5deb3' -blur 0x2 \
  -fill '#8b5a2b' -draw 'ellipse 240,230 110,60 0,360' \
  -fill '#8b5a2b' -draw 'circle 345,160 345,210' \
  -fill '#5c3a1a' -draw 'ellipse 320,150 15,35 0,360 ellipse 372,150 15,35 0,360' \
  -fill '#8b5a2b' -draw 'rectangle 160,260 185,320 rectangle 290,260 315,320' \
  -fill '#8b5a2b' -draw 'polygon 130,210 90,160 100,155 140,200' \
  -fill '#000000' -draw 'circle 332,155 332,161 circle 360,155 360,161 circle 347,180 347,188' \
  -font "$FONT" -pointsize 56 -fill '#ffffff' -stroke '#000000' -strokewidth 2 \
  -gravity north -annotate +0+20 'perro' \
  -strip -sampling-factor 4:2:0 -quality 85 "$OUT/img/perro.jpg"

echo "== img/Eafit.jpg"
"$CONVERT" -size 400x300 radial-gradient:'#1e90ff-#002855' \
  -fill none -stroke '#ffffff' -strokewidth 4 -draw 'roundrectangle 20,20 380,280 15,15' \
  -stroke none -font "$FONT" -pointsize 80 -fill '#ffffff' -gravity center -annotate +0-10 'EAFIT' \
  -font Helvetica -pointsize 20 -fill '#d0e4ff' -gravity south -annotate +0+40 'Universidad EAFIT - Medellin' \
  -strip -sampling-factor 4:2:0 -quality 85 "$OUT/img/Eafit.jpg"

# ---------------------------------------------------------------- videos
# H.264 main profile, yuv420p, 25 fps, keyframe every 25 frames (1 s),
# moov atom at the front (+faststart) so browsers can start/seek immediately.
X264=(-c:v libx264 -profile:v main -level 3.0 -pix_fmt yuv420p -preset medium
      -g 25 -keyint_min 25 -sc_threshold 0 -threads 1)
AAC=(-c:a aac -b:a 64k -ac 1 -ar 44100)
MP4=(-movflags +faststart -fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 -shortest)

echo "== video/Flores.mp4"
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "mandelbrot=size=320x240:rate=25:start_scale=3:end_scale=0.05:end_pts=150" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=6" \
  -t 6 -map 0:v -map 1:a "${X264[@]}" -crf 26 "${AAC[@]}" "${MP4[@]}" \
  "$OUT/video/Flores.mp4"

echo "== video/Planeta.mp4  (~1.5 MB on purpose: larger than socket buffers)"
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=480x360:rate=25,noise=alls=12:allf=t+u:all_seed=7" \
  -f lavfi -i "sine=frequency=220:sample_rate=44100:duration=8" \
  -t 8 -map 0:v -map 1:a "${X264[@]}" -b:v 1400k -maxrate 1600k -bufsize 3000k \
  "${AAC[@]}" "${MP4[@]}" \
  "$OUT/video/Planeta.mp4"

# ---------------------------------------------------------------- PDF
echo "== pdf/OWASP.pdf"
cat > "$TMP/owasp.ps" <<'PS'
%!PS-Adobe-3.0
%%Title: OWASP Top 10 (2021) - summary
%%Pages: 2
%%EndComments
[ /Title (OWASP Top 10 \(2021\) - summary) /Author (smolhttpd demo)
  /Subject (Demo PDF served by smolhttpd) /Creator (make-fs-image.sh)
  /CreationDate (D:20240101000000Z) /ModDate (D:20240101000000Z)
  /DOCINFO pdfmark
/y 0 def
/nl { /y y 16 sub def 72 y moveto } def
/line { show nl } def
/head { /Helvetica-Bold findfont 20 scalefont setfont } def
/body { /Times-Roman findfont 12 scalefont setfont } def
/bold { /Times-Bold findfont 12 scalefont setfont } def
%%Page: 1 1
<< /PageSize [612 792] >> setpagedevice
/y 730 def 72 y moveto
head (OWASP Top 10 - 2021) line nl
body
(The OWASP Top 10 is a standard awareness document for developers and web) line
(application security. It represents a broad consensus about the most critical) line
(security risks to web applications. This page summarises the 2021 edition.) line
nl
bold (A01:2021 - Broken Access Control) line body
(   Users acting outside of their intended permissions, e.g. path traversal) line
(   \(GET /../../etc/passwd\) or forced browsing to unauthenticated pages.) line
bold (A02:2021 - Cryptographic Failures) line body
(   Sensitive data transmitted or stored without adequate encryption.) line
bold (A03:2021 - Injection) line body
(   SQL, NoSQL, OS command and header injection \(e.g. CRLF in HTTP headers\).) line
bold (A04:2021 - Insecure Design) line body
(   Missing or ineffective security controls in the design itself.) line
bold (A05:2021 - Security Misconfiguration) line body
(   Default accounts, verbose error messages, directory listings left enabled.) line
bold (A06:2021 - Vulnerable and Outdated Components) line body
(   Unpatched libraries, frameworks and runtimes.) line
bold (A07:2021 - Identification and Authentication Failures) line body
(   Credential stuffing, weak passwords, broken session management.) line
bold (A08:2021 - Software and Data Integrity Failures) line body
(   Unsigned updates, insecure deserialisation, untrusted CI/CD pipelines.) line
bold (A09:2021 - Security Logging and Monitoring Failures) line body
(   Attacks that go unnoticed because nothing is logged or alerted.) line
bold (A10:2021 - Server-Side Request Forgery \(SSRF\)) line body
(   The server fetches a remote resource from a user-supplied URL.) line
showpage
%%Page: 2 2
/y 730 def 72 y moveto
head (What this means for a small HTTP server) line nl
body
(*  Normalise and confine request paths to the document root \(A01\).) line
(*  Reject control characters, CR and LF in request lines and headers \(A03\).) line
(*  Limit request line, header and body sizes; time out idle clients \(A04\).) line
(*  Never list directories or leak stack traces in error pages \(A05\).) line
(*  Keep dependencies minimal and up to date \(A06\).) line
(*  Log every request with status code and peer address \(A09\).) line
nl
(Reference: https://owasp.org/Top10/) line
nl
/Helvetica findfont 9 scalefont setfont
(Generated by scripts/make-fs-image.sh with Ghostscript pdfwrite for the smolhttpd demo.) line
showpage
%%EOF
PS
gs -q -dSAFER -dBATCH -dNOPAUSE -sDEVICE=pdfwrite -dCompatibilityLevel=1.4 \
   -dPDFSETTINGS=/prepress -dOmitID -dOmitXMP -o "$OUT/pdf/OWASP.pdf" "$TMP/owasp.ps"

# ---------------------------------------------------------------- MSI
echo "== Programa/putty.msi"
# Note: wixl always writes a fresh package-code UUID and the current time into
# the MSI summary information, so this one file is not byte-for-byte
# reproducible (its tables and embedded cabinet contents are).
cat > "$TMP/README.txt" <<'TXT'
smolhttpd demo package
======================

This is a tiny Windows Installer package used only as a binary download
test for the smolhttpd web server. Installing it copies this README.txt to
"C:\Program Files\smolhttpd-demo\". It contains no executable code and is
not PuTTY; the file name is only a fixture name.
TXT
cat > "$TMP/putty.wxs" <<'WXS'
<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="8C1E4B52-3F6A-4C1D-9E27-5A0B6D3F2E11"
           UpgradeCode="2D7F9A60-1B3C-4E85-A6D4-7C9E0F1B2A33"
           Name="smolhttpd demo" Manufacturer="smolhttpd"
           Version="1.0.0" Language="1033">
    <Package InstallerVersion="200" Compressed="yes"
             Description="smolhttpd demo MSI (installs a README)"
             Comments="Test fixture for smolhttpd" Manufacturer="smolhttpd"/>
    <Media Id="1" Cabinet="demo.cab" EmbedCab="yes"/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFilesFolder">
        <Directory Id="INSTALLDIR" Name="smolhttpd-demo">
          <Component Id="ReadmeComponent" Guid="5E3D1C2B-9A8F-4B7E-8D6C-1F0A2B3C4D55">
            <File Id="ReadmeFile" Name="README.txt" Source="README.txt" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Main" Title="smolhttpd demo" Level="1">
      <ComponentRef Id="ReadmeComponent"/>
    </Feature>
  </Product>
</Wix>
WXS
touch -d @"$SOURCE_DATE_EPOCH" "$TMP/README.txt"
OUTABS=$(cd "$OUT" && pwd)
( cd "$TMP" && wixl -o "$OUTABS/Programa/putty.msi" putty.wxs )

echo "done: $OUT"
