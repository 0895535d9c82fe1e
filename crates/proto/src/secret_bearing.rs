/// The proto paths whose derived `Debug` the build skips (`build.rs` includes this file too).
pub const SECRET_BEARING: &[&str] = &[
    ".writ.authz.v1.TokenRequest",
    ".writ.authz.v1.TokenResponse",
    ".writ.authz.v1.DeviceAuthorizationRequest",
    ".writ.authz.v1.DeviceAuthorizationResponse",
    ".writ.authz.v1.IntrospectRequest",
    ".writ.authz.v1.RevokeRequest",
    ".writ.sts.v1.ExchangeRequest",
    ".writ.sts.v1.ExchangeResponse",
    ".writ.admin.v1.RotateAdminCredentialResponse",
    ".writ.admin.v1.CreateClientResponse",
    ".writ.admin.v1.RotateClientSecretResponse",
    ".writ.admin.v1.CreateUserRequest",
    ".writ.admin.v1.SetUserPasswordRequest",
    ".writ.admin.v1.AuthenticateClientRequest",
];
