// The suite starts PostgreSQL with runuser and checks Unix file modes: it runs on Linux.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
