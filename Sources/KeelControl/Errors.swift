import Foundation
import Hummingbird
import KeelAPI
import KeelCompiler
import NIOCore

/// An error the API answers with: a status and an `ErrorBody`.
public struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    public let status: HTTPResponse.Status
    public let body: ErrorBody

    public init(_ status: HTTPResponse.Status, _ message: String, issues: [ErrorBody.Issue]? = nil) {
        self.status = status
        self.body = ErrorBody(error: message, issues: issues)
    }

    public var description: String { "\(status.code) \(body.error)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONResponse.make(body, status: status)
    }

    /// Any error thrown while handling a request, as the API reports it.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as ChangeError:
            switch e {
            case .notFound(let m): return APIError(.notFound, m)
            case .invalid(let c):
                return APIError(.unprocessableContent, "invalid configuration: \(c.issues.count) problem\(c.issues.count == 1 ? "" : "s")",
                                issues: c.issues.map { ErrorBody.Issue(field: $0.path, message: $0.message) })
            case .publish(let m): return APIError(.serviceUnavailable, "not published, nothing changed: \(m)")
            case .store(let m): return APIError(.serviceUnavailable, "not stored, nothing changed: \(m)")
            }
        case let e as ConfigError:
            return APIError(.unprocessableContent, "invalid configuration",
                            issues: e.issues.map { ErrorBody.Issue(field: $0.path, message: $0.message) })
        case let e as DecodingError: return decoding(e)
        case is NIOTooManyBytesError: return APIError(.contentTooLarge, "request body too large")
        case let e as HTTPError:
            switch e.status {
            case .notFound: return APIError(.notFound, "no such resource")
            case .contentTooLarge: return APIError(.contentTooLarge, "request body too large")
            default: return APIError(e.status, e.body ?? e.status.reasonPhrase)
            }
        default:
            return APIError(.internalServerError, "\(error)")
        }
    }

    static func path(_ keys: [CodingKey]) -> String {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s.isEmpty ? "body" : s
    }

    static func decoding(_ e: DecodingError) -> APIError {
        let field: String, message: String
        switch e {
        case .keyNotFound(let key, let c):
            field = path(c.codingPath + [key]); message = "required"
        case .typeMismatch(let t, let c):
            field = path(c.codingPath); message = "expected \(typeName(t))"
        case .valueNotFound(let t, let c):
            field = path(c.codingPath); message = "expected \(typeName(t)), not null"
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty { return APIError(.badRequest, "malformed JSON: \(c.underlyingError.map { "\($0)" } ?? c.debugDescription)") }
            field = path(c.codingPath); message = c.debugDescription
        @unknown default:
            return APIError(.badRequest, "malformed request body")
        }
        return APIError(.badRequest, "invalid request body", issues: [ErrorBody.Issue(field: field, message: message)])
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type, is UInt64.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default:
            let n = "\(t)"
            return n.hasPrefix("Array") ? "a list" : "an object"
        }
    }
}

/// Responses with JSON bodies (sorted keys, ISO 8601 times).
enum JSONResponse {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static func make<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Data("{\"error\":\"cannot encode the response\"}".utf8)
        return raw(data, status: status)
    }

    static func raw(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func raw(_ text: String, status: HTTPResponse.Status = .ok) -> Response { raw(Data(text.utf8), status: status) }

    static func object(_ dict: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return raw(data, status: status)
    }
}

/// Turns every error into the API's JSON error shape, so clients (and the
/// OpenAPI document) see one error format, for 404s of unknown paths too.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do { return try await next(request, context) } catch {
            let e = APIError.from(error)
            if e.status.code >= 500 { context.logger.error("\(request.method) \(request.uri.path): \(e)") }
            var response = JSONResponse.make(e.body, status: e.status)
            if e.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer realm=\"keel\"" }
            return response
        }
    }
}
