import Foundation

/// Bearer tokens for the admin API, from a file of mode 0600:
///
///     # name  role   token
///     admin   admin  3f1c...
///     grafana read   9ab2...
///
/// `admin` tokens may change the configuration; `read` tokens may only read
/// (monitoring). The token's name is the author of the revisions it makes.
/// On first start the file is created with one admin and one read token.
public struct Tokens: Sendable {
    public enum Role: String, Sendable { case admin, read }
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let role: Role
        public let token: String
    }
    public let entries: [Entry]

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads `path`, creating it (mode 0600) if missing. A file readable by
    /// others, or a malformed line, is refused.
    public static func load(path: String) throws -> Tokens {
        if !FileManager.default.fileExists(atPath: path) {
            let admin = Entry(name: "admin", role: .admin, token: random())
            let read = Entry(name: "monitor", role: .read, token: random())
            let text = "# Keel admin API tokens: name role token (role: admin or read). Keep this file mode 0600.\n"
                + [admin, read].map { "\($0.name) \($0.role.rawValue) \($0.token)" }.joined(separator: "\n") + "\n"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else { throw Failure(description: "\(path): cannot create: \(String(cString: strerror(errno)))") }
            let ok = text.withCString { write(fd, $0, strlen($0)) } == text.utf8.count
            let synced = fsync(fd) == 0
            close(fd)
            guard ok && synced else { throw Failure(description: "\(path): cannot write") }
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure(description: "\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard st.st_mode & 0o077 == 0 else {
            throw Failure(description: "\(path): mode \(String(st.st_mode & 0o777, radix: 8)) lets others read the tokens; chmod 600 it")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Failure(description: "\(path): cannot read") }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String = "<tokens>") throws -> Tokens {
        var entries: [Entry] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count == 3, let role = Role(rawValue: String(f[1])) else {
                throw Failure(description: "\(path): line \(i + 1): expected \"name role token\" with role admin or read")
            }
            guard f[2].count >= 16 else { throw Failure(description: "\(path): line \(i + 1): token shorter than 16 characters") }
            guard !entries.contains(where: { $0.name == f[0] || $0.token == f[2] }) else {
                throw Failure(description: "\(path): line \(i + 1): name or token given twice")
            }
            entries.append(Entry(name: String(f[0]), role: role, token: String(f[2])))
        }
        guard !entries.isEmpty else { throw Failure(description: "\(path): no tokens") }
        return Tokens(entries: entries)
    }

    /// The entry whose token is `presented`, comparing every byte of every
    /// token (no early exit that would time the match).
    public func find(_ presented: Substring) -> Entry? {
        var found: Entry?
        for e in entries {
            let a = Array(e.token.utf8), b = Array(presented.utf8)
            var diff = UInt8(a.count == b.count ? 0 : 1)
            for i in 0..<a.count { diff |= a[i] ^ (i < b.count ? b[i] : 0) }
            if diff == 0 { found = e }
        }
        return found
    }

    /// 32 random bytes as hex.
    static func random() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// The first token with `role` (keelctl on the appliance reads it from the file).
    public func first(_ role: Role) -> Entry? { entries.first { $0.role == role } }
}
