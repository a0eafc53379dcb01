# Installs greenops-agent as a Windows service (run in an elevated PowerShell).
#
#   .\install.ps1 -Server https://greenops.example.org -EnrollmentToken gok_enroll_...
#
# Copies the binary to %ProgramFiles%\GreenOps, writes %ProgramData%\GreenOps\agent.toml,
# restricts %ProgramData%\GreenOps (configuration, identity, credential, spool) to SYSTEM and
# Administrators, and registers the service "GreenOpsAgent" (LocalSystem, automatic start,
# restart on failure). The service runs `greenops-agent.exe service`: WTS reads the console
# session's idle time and lock state from session 0. Not exercised by CI (no Windows
# machines); see the README's platform table.
param(
    [Parameter(Mandatory = $true)] [string] $Server,
    [string] $EnrollmentToken = "",
    [string] $Binary = ".\greenops-agent.exe"
)
$ErrorActionPreference = "Stop"

$programDir = Join-Path $env:ProgramFiles "GreenOps"
$dataDir = Join-Path $env:ProgramData "GreenOps"
New-Item -ItemType Directory -Force -Path $programDir, $dataDir, (Join-Path $dataDir "state") | Out-Null
Copy-Item -Force $Binary (Join-Path $programDir "greenops-agent.exe")

# Only SYSTEM and Administrators may read the agent's credential and spool.
icacls $dataDir /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" | Out-Null

$config = "server_url = `"$Server`"`r`nstate_dir = '$dataDir\state'`r`n"
if ($EnrollmentToken) { $config += "enrollment_token = `"$EnrollmentToken`"`r`n" }
Set-Content -Path (Join-Path $dataDir "agent.toml") -Value $config -Encoding UTF8

$exe = '"' + (Join-Path $programDir "greenops-agent.exe") + '" service'
if (Get-Service -Name GreenOpsAgent -ErrorAction SilentlyContinue) {
    Stop-Service GreenOpsAgent
    sc.exe config GreenOpsAgent binPath= $exe | Out-Null
} else {
    New-Service -Name GreenOpsAgent -BinaryPathName $exe -DisplayName "GreenOps agent" `
        -Description "Reports user idle time, CPU and memory to the GreenOps collector." `
        -StartupType Automatic | Out-Null
}
sc.exe failure GreenOpsAgent reset= 86400 actions= restart/5000/restart/30000/restart/60000 | Out-Null
Start-Service GreenOpsAgent
Write-Host "GreenOpsAgent installed and started; check it with: greenops-agent.exe status"
